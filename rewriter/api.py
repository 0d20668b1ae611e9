"""In-process personalization for apps that do not want the proxy (README: "In-process").

    from rewriter.api import Personalizer

The implementation lives in rewriter/serve/api.py; this module keeps the documented import
path stable.
"""

from rewriter.serve.api import Personalizer

__all__ = ["Personalizer"]
