"""The web console's files (static/: index.html, app.js, style.css), served at
`/ui/` by router.server.console; the page reads `/router/events`."""
