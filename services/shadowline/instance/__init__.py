"""One shadowline instance: the writer, the application service and its HTTP entrypoint."""
