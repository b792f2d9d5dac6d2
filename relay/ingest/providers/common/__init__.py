"""What provider modules are built from (the Provider type, the event building blocks,
shared checks); no module here is a provider itself, and none is in the table.
"""
