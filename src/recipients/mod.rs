//! Recipient verification: which addresses at our domains exist. Today the
//! table file ([`table`]); the downstream callout and its on-disk cache
//! join it here.

pub mod table;
