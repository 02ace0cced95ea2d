"""The `methane-seg` command: one dispatcher over the commands of every part of the project."""
