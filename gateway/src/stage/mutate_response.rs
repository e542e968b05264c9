//! `mutate_response`: (in progress)
