"""The Pulumi adapter: runs stack steps in worker processes through the Automation API."""
