"""The records: events and catalog records, their validation, the file formats. Pure."""
