//! SignedImage API
