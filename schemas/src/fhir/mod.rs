//! FHIR R5: the Observation shapes jhe accepts, and the resources, Bundles and outcomes it renders.
