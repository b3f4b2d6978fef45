//! Published plugins: publish, list, yank.
