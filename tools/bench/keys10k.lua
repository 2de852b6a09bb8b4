-- wrk script for the ratelimit10k scenario: each request carries the next
-- of 10,000 API keys in X-Api-Key, cycling, as many distinct clients would.
local n = 0
local headers = {}

request = function()
	n = n % 10000 + 1
	headers["X-Api-Key"] = "key-" .. n
	return wrk.format(nil, nil, headers)
end
