# Recipes for day-to-day work. Nothing here is required: each recipe is one plain command.

# Run the server on the embedded default (SQLite in ./data, in-memory channel layer).
run:
    cargo run --release -p chat-server

# The whole test suite (what CI runs after lint).
test:
    ./scripts/test

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Format the code.
fmt:
    cargo fmt --all

# Everything CI does.
ci:
    bash .ci/run

# The standard benchmark set: criterion, then chat-bench end to end (docs/benchmarks.md).
bench:
    ./scripts/bench
