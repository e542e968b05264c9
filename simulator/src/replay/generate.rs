//! A realistic recording, generated deterministically: a day-shaped mix of clients.
