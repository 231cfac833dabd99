"""Ingest stage: input files become decoded posts, or rejects with a reason.

In: files and folders named by the user. Out: `SourceRef`s (what was found), then for each file a
decoded `Source` (sources.read_source: encoding, sha256, sidecar metadata) or a `Reject` (empty,
binary, undecodable, too large, unreadable, outside the input folder), and from a decoded file its
posts (posts.posts_of): a text file is one post, a Movable Type or WordPress export one per
published entry (mtif, wxr), a saved page the post in it (page); everything else in them is a
reject naming the entry.
"""
