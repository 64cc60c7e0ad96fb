"""What people read, rendered from a stored run only: table rows, the terminal summary, Markdown,
the HTML page and github-action-benchmark files."""
