"""Platform layer: settings, embedded servers, database, errors, app assembly and CLI."""
