"""The chat UI (Gradio), inside the package: pure rendering, a typed session, one module
per panel, CSS/JS as asset files. ``python app.py`` and ``rag ui`` start it."""
