"""The `affinity` console script's entry (pyproject: `affinity = "cli:main"`).

Every command lives in rewriter/cli/; this file only hands over to it.
"""

from rewriter.cli.main import main

if __name__ == "__main__":
    main()
