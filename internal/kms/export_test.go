package kms

import "context"

// RelayAheadOnce runs one round of relaying ahead and waits for the
// batches it started.
func (s *Service) RelayAheadOnce(ctx context.Context) {
	s.relayAhead(ctx)
	s.ahead.wg.Wait()
}

// RelayAheadStart runs one round of relaying ahead without waiting.
func (s *Service) RelayAheadStart(ctx context.Context) { s.relayAhead(ctx) }

// RelayAheadWait waits for the relay batches started ahead.
func (s *Service) RelayAheadWait() { s.ahead.wg.Wait() }
