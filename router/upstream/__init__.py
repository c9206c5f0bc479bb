"""Talking to one container: the hot path's lean HTTP/1.1 pool (`http1`) and
the aiohttp session the background tasks use, owned together by one
`ContainerClient` per container (`client`)."""
