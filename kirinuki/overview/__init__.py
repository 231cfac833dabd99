"""The overview of a build: what the corpus is about, drawn (figures -> charts -> page).

In: a build folder's tables. Out: overview.html in that folder (page.write_overview); for a release,
the same charts as PNG files (page.write_images).
"""

from kirinuki.overview.page import IMAGES, PAGE, write_images, write_overview

__all__ = ["IMAGES", "PAGE", "write_images", "write_overview"]
