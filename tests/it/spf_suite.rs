//! The RFC 7208 SPF test suite (placeholder; being written).
