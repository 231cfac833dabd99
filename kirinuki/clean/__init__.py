"""Clean stage: a post's parsed rows get normalised text, resolved outlets and date mentions.

In: one post's table rows from the parse stage. Out: the same rows with `*_norm` text (rules in
reference/normalization.tsv), outlet ids from the curated register (reference/outlets.tsv), cleaned
author names, and the post's `date_mentions` rows (`date_mentions`).
"""
