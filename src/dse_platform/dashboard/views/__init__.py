"""One module per dashboard page; each ``render(settings, engine)`` draws its page from `queries` and `charts`."""
