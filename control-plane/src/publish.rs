//! Publishing realm changes as signed bundles.
