"""Build plumbing: batches of input files through ingest, parse and clean into Arrow parts.

In: the inputs found by ingest. Out: Arrow parts per batch (`batch`), which are also the next build's
cache, the fingerprints that decide what is parsed again, whether a build is up to date (`plan`), and
the build's summary (`summary`). Plain functions: the Prefect flow in flows/build.py composes them.
"""
