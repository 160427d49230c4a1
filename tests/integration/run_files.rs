//! Written in a following commit.
