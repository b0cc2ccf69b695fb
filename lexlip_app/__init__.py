"""The application layer: the `lexlip` command line, `lexlip demo` and the demo page.

It is built on the library (`lexlip_es`), the trainer (`trainer`) and ingestion (`ingest`); the library never imports
this package, the trainer or ingestion, so a service that only searches installs and imports `lexlip_es` alone.
"""
