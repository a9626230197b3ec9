//! `agent`: the node daemon (`gingham-agent`), the operator CLI (`routectl`) and the CNI plugin
//! (`gingham-cni`).
