"""The review web app: the only code of poisonguard that imports FastAPI and uvicorn.

``app.create_app`` builds the application (for tests and embedding; routes are
``pages.router`` and ``api.router``); ``server.serve`` runs it with uvicorn,
as ``poisonguard review serve`` does.
"""
