package xds

import "time"

// StreamStatus is the sync state of one open stream, as /debug/syncz
// shows it.
type StreamStatus struct {
	ID int64 `json:"stream_id"`
	// NodeID and Cluster come from the node in the stream's first request.
	NodeID    string `json:"node_id"`
	Cluster   string `json:"cluster,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
	// Kind is ads or the type's own service, followed by sotw or delta.
	Kind        string       `json:"kind"`
	Peer        string       `json:"peer,omitempty"`
	ConnectedAt time.Time    `json:"connected_at"`
	Types       []TypeStatus `json:"types"`
}

// TypeStatus is the sync state of one resource type on one stream.
type TypeStatus struct {
	TypeURL    string   `json:"type_url"`
	Wildcard   bool     `json:"wildcard,omitempty"`
	Subscribed []string `json:"subscribed,omitempty"`
	// VersionSent is the version of the last response sent.
	VersionSent string `json:"version_sent,omitempty"`
	// VersionAcked is the version of the last response the client ACKed.
	VersionAcked string `json:"version_acked,omitempty"`
	// VersionNacked is the version of the last response the client
	// rejected; the client keeps using VersionAcked meanwhile.
	VersionNacked string `json:"version_nacked,omitempty"`
	Nonce         string `json:"nonce,omitempty"`
	// LastError is the client's error_detail message from its last NACK.
	LastError string `json:"last_error,omitempty"`
	// ErrorResources and ErrorKeys name the rejected resources and the
	// store keys they were built from.
	ErrorResources []string  `json:"error_resources,omitempty"`
	ErrorKeys      []string  `json:"error_keys,omitempty"`
	Responses      uint64    `json:"responses"`
	ResourcesSent  uint64    `json:"resources_sent"`
	Acks           uint64    `json:"acks"`
	Nacks          uint64    `json:"nacks"`
	LastSent       time.Time `json:"last_sent,omitzero"`
	LastAck        time.Time `json:"last_ack,omitzero"`
	LastNack       time.Time `json:"last_nack,omitzero"`
}

// Synced reports whether the client ACKed the latest response of the type.
func (t TypeStatus) Synced() bool {
	return t.VersionSent != "" && t.VersionSent == t.VersionAcked
}
