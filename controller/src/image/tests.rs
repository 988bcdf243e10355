//! Unit tests of the metadata image.
