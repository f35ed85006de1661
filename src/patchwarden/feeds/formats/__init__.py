"""Feed file formats: one module per format, each a pure function from bytes to a
``ParsedFeed``; ``detect`` recognises a file's format and dispatches to the right one.

Parsers never read the clock: where a format has no timestamp of its own, the caller's
``now`` is used. They never return part of a file either — any malformed record raises
``FeedError`` naming the file, the record and the field.
"""
