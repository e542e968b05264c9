//! Maps a field path (`routes[3].upstream`) to its line and column in the YAML source.
//! (Interface stub: the config helper fills it in.)

#[derive(Debug, Default)]
pub struct LineIndex;

impl LineIndex {
    pub fn build(_text: &str) -> Self {
        LineIndex
    }

    /// Line and column (1-based) of the node at `path`, or of its nearest ancestor that exists.
    pub fn locate(&self, _path: &str) -> Option<(usize, usize)> {
        None
    }
}
