//! End-to-end tests of Curbside: real processes, real files, real faults. The helpers here are
//! the programs the tests drive and kill.
