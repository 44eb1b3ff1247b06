package quicks

import "context"

type callerKey struct{}

// WithCaller returns ctx carrying the subject CN of the client certificate
// of the request being served. The servers set it before calling a Backend.
func WithCaller(ctx context.Context, cn string) context.Context {
	return context.WithValue(ctx, callerKey{}, cn)
}

// Caller returns the subject CN set by WithCaller, or "".
func Caller(ctx context.Context) string {
	cn, _ := ctx.Value(callerKey{}).(string)
	return cn
}
