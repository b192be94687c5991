"""Great Expectations suites of the lake tables (package data; see README.md). Each gold mart's suite is in its folder."""
