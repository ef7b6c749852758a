"""lmbook: the helper package of the book *From Neurons to Large Models*.

One module per concept, named by topic. Importing the package has no side effects: nothing is seeded,
downloaded or styled until a function is called; :func:`lmbook.setup` sets threads and seeds explicitly.
"""

from lmbook.device import device
from lmbook.session import setup
from lmbook.source import show

__all__ = ["device", "setup", "show"]
__version__ = "0.1.0"
