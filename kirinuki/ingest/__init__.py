"""Ingest stage: input files become decoded post texts, or rejects with a reason.

In: files and folders named by the user. Out: `SourceRef`s (what was found), then for each a `Source`
(the decoded, LF-normalised text, its encoding, sha256 and sidecar metadata) or a `Reject` (empty,
binary, undecodable, too large, unreadable, outside the input folder).
"""
