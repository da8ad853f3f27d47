//! Open mHealth / IEEE 1752 data points: validation and the values jhe derives from them.
