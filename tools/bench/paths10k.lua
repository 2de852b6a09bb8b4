-- wrk script for the cache scenario: each request asks for the next of
-- 10,000 distinct paths, cycling, as many clients reading a catalogue
-- would (not one hot key). The origin answers every path alike.
local n = 0

request = function()
	n = n % 10000 + 1
	return wrk.format(nil, "/c/" .. n)
end
