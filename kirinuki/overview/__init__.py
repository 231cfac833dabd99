"""The overview of a build: what the corpus is about, drawn (figures -> charts -> page).

In: a build folder's tables. Out: overview.html and overview/*.png in that folder (page.write_overview).
"""

from kirinuki.overview.page import IMAGES, INDEX, PAGE, write_overview

__all__ = ["IMAGES", "INDEX", "PAGE", "write_overview"]
