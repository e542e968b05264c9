//! Reading recordings: Gatehouse recording lines, HAR 1.2 and GoReplay `.gor` files into one
//! [`super::model::Recording`], with the place and reason of every problem.
