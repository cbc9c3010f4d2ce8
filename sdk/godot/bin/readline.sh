# One line of the runner's stdin to stdout, without its newline; exit 1 at end of input.
# Godot 3 cannot read its own stdin (File refuses /dev/stdin, OS.read_string_from_stdin is not
# bound), so the runner asks this through OS.execute: the shell inherits the engine's stdin, and
# `read` takes exactly one line from it (it reads a pipe byte by byte, never past the newline).
IFS= read -r line || [ -n "$line" ] || exit 1
printf '%s' "$line"
