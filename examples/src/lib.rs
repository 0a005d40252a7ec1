//! Example Vodo hosts. The binaries in `src/bin` run them; the parts a test
//! also drives (the partner host, in a real browser) live here.

pub mod partner;
