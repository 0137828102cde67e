"""The provider's Backups API: the typed client, its models and errors, and the API token."""
