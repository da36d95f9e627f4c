"""Image-search services, one small module each, behind one plain interface:

    search(query: str, count: int, base_url: str, session: ApiSession) -> list[ImageRecord]

at most `count` images for the query, best first, each with the licence and the creator
when the service gives them. `session` (session.py) does the HTTP: a timeout, backing off on
429 as `Retry-After` asks, and errors that name the service. A new service is one module
with a `DEFAULT_BASE_URL` and a `search` function (and a `prepare(session)` if it needs a
key: pexels.py), added to `PROVIDERS` in src/data/image_search.py.
"""
