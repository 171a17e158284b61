"""The chat UI: ask questions about the indexed news articles, read cited answers
beside their sources, add articles, change retrieval settings.

    python app.py [--host H] [--port N]   # http://127.0.0.1:7860 (or RAG_UI_HOST / RAG_UI_PORT)

The same as ``rag ui``; the code is the package's ``rag/ui/`` (layout and launch in
rag/ui/app.py, one module per panel in rag/ui/panels/, pure rendering in
rag/ui/render.py, CSS/JS in rag/ui/assets/)."""

import sys

from rag.ui.app import main

if __name__ == "__main__":
    sys.exit(main())
