package controlplane

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Admin API of the gateway lifecycle (docs/ARCHITECTURE.md, "REST API"):
//
//	POST   /v1/tokens                   {"gateway":NAME,"ttl":"24h"} -> {"token":TEXT,"info":JoinToken}
//	GET    /v1/tokens                   {"items":[JoinToken…]}
//	DELETE /v1/tokens/{id}              revoke an unused token -> JoinToken
//	POST   /v1/egateways/{name}/revoke  revoke the gateway's key -> the EGateway
//	POST   /v1/egateways/{name}/rotate-key  ask the gateway to rotate its key -> the EGateway
//	GET    /v1/revokedkeys              {"items":[RevokedKey…]}
func (s *Server) lifecycleRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/tokens", s.handleTokenCreate)
	mux.HandleFunc("GET /v1/tokens", func(w http.ResponseWriter, r *http.Request) {
		items, err := s.JoinTokens()
		if err != nil {
			writeError(w, s.log, err)
			return
		}
		if items == nil {
			items = []JoinToken{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"items": items})
	})
	mux.HandleFunc("DELETE /v1/tokens/{id}", func(w http.ResponseWriter, r *http.Request) {
		t, err := s.RevokeJoinToken(r.PathValue("id"))
		if err != nil {
			writeError(w, s.log, err)
			return
		}
		writeJSON(w, http.StatusOK, t)
	})
	mux.HandleFunc("POST /v1/egateways/{name}/revoke", func(w http.ResponseWriter, r *http.Request) {
		o, err := s.RevokeGateway(r.PathValue("name"))
		if err != nil {
			writeError(w, s.log, err)
			return
		}
		writeJSON(w, http.StatusOK, o)
	})
	mux.HandleFunc("POST /v1/egateways/{name}/rotate-key", func(w http.ResponseWriter, r *http.Request) {
		o, err := s.RequestKeyRotation(r.PathValue("name"))
		if err != nil {
			writeError(w, s.log, err)
			return
		}
		writeJSON(w, http.StatusOK, o)
	})
	mux.HandleFunc("GET /v1/revokedkeys", func(w http.ResponseWriter, r *http.Request) {
		items, err := s.RevokedKeys()
		if err != nil {
			writeError(w, s.log, err)
			return
		}
		if items == nil {
			items = []RevokedKey{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"items": items})
	})
}

// TokenRequest is the body of POST /v1/tokens.
type TokenRequest struct {
	Gateway string `json:"gateway"`
	TTL     string `json:"ttl,omitempty"` // Go duration; "" = DefaultTokenTTL
}

// TokenAnswer is the answer of POST /v1/tokens: the token's text (shown once) and its
// description.
type TokenAnswer struct {
	Token string    `json:"token"`
	Info  JoinToken `json:"info"`
}

func (s *Server) handleTokenCreate(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r)
	if err != nil {
		writeError(w, s.log, err)
		return
	}
	var req TokenRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, s.log, &Error{Code: CodeBadRequest, Message: "body is not a token request: " + err.Error()})
		return
	}
	var ttl time.Duration
	if req.TTL != "" {
		if ttl, err = time.ParseDuration(req.TTL); err != nil {
			writeError(w, s.log, &Error{Code: CodeBadRequest, Field: "ttl", Message: fmt.Sprintf("%q is not a duration", req.TTL)})
			return
		}
	}
	text, info, err := s.CreateJoinToken(req.Gateway, ttl)
	if err != nil {
		writeError(w, s.log, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, TokenAnswer{Token: text, Info: info})
}
