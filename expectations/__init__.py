"""Great Expectations suites of the lake tables (package data, see README.md); a mart's is in its folder."""
