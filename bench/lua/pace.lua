
-- Pacing (appended to case.lua for fixed-rate runs): each connection waits a random
-- 0..2*delay_ms (mean delay_ms) before each request, so N connections send about
-- N * 1000 / delay_ms requests per second while the server keeps up.
function delay()
  return math.floor(math.random() * 2 * delay_ms + 0.5)
end
