"""Parse stage: one decoded post becomes rows with character offsets into its text.

In: a `Source` (decoded post text and metadata). Out: the rows of documents, excerpts, paragraphs and
citations (`records.source_rows`), from the clipping grammar (`grammar.parse`) and the post's date
(`post_date`), each row pointing back at the exact characters it came from.
"""
