"""Release stage: immutable, versioned, self-describing copies of a validated build.

In: a validated build folder. Out: `<dest>/<dataset>-<version>/` with data, dataset card, Croissant,
Data Package, changelog and SHA256SUMS, recorded in versions.json/latest.json. `checks` says what may
be released, `assemble` writes the files (`describe` the metadata, `changes` the changelog), `integrity`
re-checks a release (`integrity.verify`), `history` keeps the versions, `make` ties them together, `remote` publishes to S3.
"""

from kirinuki.release.checks import SUMS, Release, ReleaseError, check_build, check_dataset_name, check_version
from kirinuki.release.integrity import verify
from kirinuki.release.make import make_release

__all__ = ["Release", "ReleaseError", "SUMS", "check_build", "check_dataset_name", "check_version",
           "make_release", "verify"]
