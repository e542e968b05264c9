//! The replay report as pictures: offered against achieved rate and latency over time (SVG), and
//! the HTML page that links them.
