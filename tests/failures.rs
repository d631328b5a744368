//! Delivery failures and master behaviour end to end (being written).
